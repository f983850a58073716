# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
TORCH_INDEX ?=

.PHONY: demo test bench clean topic-model

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: unpinned, pip picks a CUDA build through sentence-transformers.
	# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU wheel from PyTorch's index.
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/turnforge build configs/demo.yaml --out $(OUT)
	$(VENV)/bin/turnforge train configs/train_demo.yaml --set data=$(OUT)/final --set out=$(OUT)/train
	@echo "shards:  $(OUT)/stages/   model: $(OUT)/train/final/   metrics: $(OUT)/train/metrics.jsonl"

test: $(STAMP)
	$(PY) -m pytest -q

# Every benchmark (figures in docs/benchmarks.md); all but extract, train, mix and output read
# ../shared/evaldata. Run on a quiet machine: the speed figures are ratios within one run.
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/extract_bench.py
	$(PY) bench/train_bench.py
	$(PY) bench/mix_bench.py
	$(PY) bench/output_bench.py
	$(PY) bench/dedup_bench.py
	$(PY) bench/embed_bench.py
	$(PY) bench/pii_bench.py
	$(PY) bench/quality_bench.py
	$(PY) bench/topic_bench.py
	$(PY) bench/synth_bench.py
	$(PY) bench/judge_bench.py
	$(PY) bench/label_bench.py
	$(PY) bench/scale_bench.py

clean:
	rm -rf $(VENV) out

# The shipped topic-continuity model (discriminators/topic_continuity/weights/), from the
# public data in ../shared/evaldata (model card in docs/benchmarks.md).
EV ?= ../shared/evaldata
topic-model: $(STAMP)
	$(VENV)/bin/turnforge discriminator train \
	  --data tiage:$(EV)/tiage/anno_train.json \
	  --data dialseg:$(EV)/dialseg711/en_dataset_reference_2.txt \
	  --data woz:$(EV)/crosswoz/crosswoz_val_compact.jsonl \
	  --data woz:$(EV)/multiwoz21/multiwoz21_val_compact.jsonl \
	  --splice $(EV)/sharegpt_zh/sharegpt_zh_1K_format.jsonl \
	  --splice $(EV)/llamafactory/oaast_sft_zh.json \
	  --splice $(EV)/chitchat/chitchat_messages.jsonl --splice-n 1500 --negatives-n 1000 \
	  --out discriminators/topic_continuity/weights
