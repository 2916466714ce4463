# Two commands on a fresh machine:  make demo   and   make test
# Both create .venv in the repository root on first use (CPU torch from constraints.txt).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= cam
IMAGE ?=
RESULTS ?= results
SAMPLE := $(RESULTS)/sample/synthetic_chest.png

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,slicer,reports,train,app]"
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps medspacy PyRuSH  # see pyproject
	touch $(STAMP)

install: $(STAMP)

## make demo [IMAGE=path] [MODEL=name]: localise findings on a radiograph into results/
demo: $(STAMP)
ifeq ($(IMAGE),)
	$(BIN)/cxrweakloc sample $(SAMPLE)
	$(BIN)/cxrweakloc localize $(SAMPLE) --model $(MODEL) --out $(RESULTS) --overwrite
else
	$(BIN)/cxrweakloc localize "$(IMAGE)" --model $(MODEL) --out $(RESULTS) --overwrite
endif

## make test: the whole suite (unit, CLI end to end, real-data tier, Slicer logic) + ruff
test: $(STAMP)
	./scripts/system-packages.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(RESULTS)
