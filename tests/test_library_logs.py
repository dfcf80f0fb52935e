"""Library noise: bitsandbytes' notice about the optional ``kernels`` package (printed when PEFT
imports bitsandbytes on a CPU with AVX-512 BF16) never reaches the user; its other lines do."""

from __future__ import annotations

import logging
import subprocess
import sys

import tunelab  # noqa: F401  (installs the filters)
from serve_helpers import cli_env, make_run

NOTICE = (
    "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you "
    "already `pip install kernels` and the kernels >= 0.11.1"
)


def test_the_kernels_notice_is_dropped_and_other_lines_are_kept(caplog):
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning(NOTICE, "No module named 'kernels'")
        logger.warning("a real problem: %s", "int8 matmul failed")
        logging.getLogger("peft").warning(NOTICE, "another library's line")
    assert [r.getMessage() for r in caplog.records] == [
        "a real problem: int8 matmul failed",
        NOTICE % "another library's line",
    ]


def test_predict_on_a_lora_run_prints_no_bitsandbytes_notice(tmp_path, tiny_llama_dir):
    run = make_run(tiny_llama_dir, tmp_path / "run", "causal_lm", {"name": "lora"}, 3)
    result = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "predict", str(run), "--input", "hello"],
        capture_output=True, text=True, env=cli_env(), timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "gemm_4bit_forward" not in result.stderr and "kernels" not in result.stderr
    assert result.stdout.strip()  # it did predict
