# syntax=docker/dockerfile:1
# tensorfleet, gpu image: the CUDA 11.2 / cuDNN 8.1 runtime that @tensorflow/tfjs-node-gpu 4.x
# (libtensorflow 2.9) is built against, Node.js 20 and @tensorflow/tfjs-node-gpu. Needs the
# NVIDIA driver and device plugin on the node. Build from the repository root:
#   docker build -f docker/gpu.Dockerfile -t tensorfleet:0.1.0-gpu .
# Untested in this repository's CI (no container engine, no GPU there): see docs/kubernetes.md.

# Debian bullseye has the glibc (2.31) of the Ubuntu 20.04 runtime below, so what is built
# here runs there.
FROM node:20-bullseye-slim AS build
WORKDIR /app
# The context is the repository less what .dockerignore leaves out (tests, docs, k8s, ...).
COPY . .
RUN npm ci --no-audit --no-fund \
 && npm pkg delete scripts.prepare \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm install --omit=dev --no-save --no-audit --no-fund @tensorflow/tfjs-node-gpu@^4.22.0 \
 && rm -rf src tsconfig.json

FROM nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04
ENV NODE_ENV=production
COPY --from=build /usr/local/bin/node /usr/local/bin/node
RUN groupadd --gid 1000 tensorfleet \
 && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin tensorfleet
WORKDIR /app
# dist/, node_modules/ (production only) and the files read at run time (proto/, ...).
COPY --from=build /app ./
USER 1000:1000
CMD ["node", "/app/dist/worker/cli.js", "--help"]
