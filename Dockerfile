# A Dataflow worker image with poet and its dependencies installed, for
#   poet prepare --runner DataflowRunner ... --sdk_container_image IMAGE
# Workers then start without installing anything (with --setup_file ./setup.py instead,
# each worker builds nothing but pip-installs the project's sdist and its dependencies).
#
# The image's Beam SDK and Python must be the launcher's: check with
#   python -c "import apache_beam, sys; print(apache_beam.__version__, sys.version_info[:2])"
# and build, e.g.:
#   docker build --build-arg PYTHON_VERSION=3.11 --build-arg BEAM_VERSION=2.77.0 \
#     -t REGION-docker.pkg.dev/PROJECT/REPOSITORY/poet:latest .
#   docker push REGION-docker.pkg.dev/PROJECT/REPOSITORY/poet:latest
# For reference log-probs on GPU workers (--ref-model), add the train extra, which brings torch
# (PyPI's Linux x86_64 torch wheels are CUDA builds): --build-arg EXTRAS=gcp,train
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}
ARG EXTRAS=gcp

WORKDIR /opt/poet
COPY pyproject.toml setup.py README.md ./
COPY poet ./poet
COPY pipeline ./pipeline
COPY transforms ./transforms
COPY trainer ./trainer
COPY dataset_cards ./dataset_cards
# The base image already holds apache-beam[gcp] at BEAM_VERSION, which satisfies the project's pin;
# a non-editable install, so workers import the installed copy whatever their working directory.
RUN pip install --no-cache-dir ".[${EXTRAS}]" && python -c "import poet.pipeline.steps.prepare_dataset, poet.transforms.card, poet.dataset_cards; poet.prepare"

# The base image's entrypoint (/opt/apache/beam/boot) starts the Beam worker harness: keep it.
