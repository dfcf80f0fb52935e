"""Non-text inputs: images, image + text, speech. One module per data format, one registry
(:mod:`tunelab.modalities.registry`) that the data pipeline, model loading, collation, loss,
evaluation and prediction consult for a format that is not plain text."""
