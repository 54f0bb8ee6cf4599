# syntax=docker/dockerfile:1
# tensorfleet, cpu image: Node.js 20 (Debian slim), production dependencies and
# @tensorflow/tfjs-node (native TensorFlow on the CPU). Build from the repository root:
#   docker build -f docker/cpu.Dockerfile -t tensorfleet:0.1.0-cpu .
# Untested in this repository's CI (no container engine there): see docs/kubernetes.md.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# The context is the repository less what .dockerignore leaves out (tests, docs, k8s, ...).
COPY . .
# `npm ci` builds dist/ (the `prepare` script, removed afterwards so that nothing rebuilds);
# then drop the dev dependencies and add the native backend, whose install downloads
# libtensorflow.
RUN npm ci --no-audit --no-fund \
 && npm pkg delete scripts.prepare \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm install --omit=dev --no-save --no-audit --no-fund @tensorflow/tfjs-node@^4.22.0 \
 && rm -rf src tsconfig.json

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# dist/, node_modules/ (production only) and the files read at run time (proto/, ...).
COPY --from=build /app ./
# The image's `node` user (uid 1000): the manifests run as 1000 with a read-only root filesystem.
USER 1000:1000
# The Kubernetes manifests give the command (node /app/dist/coordinator/cli.js or worker/cli.js).
CMD ["node", "/app/dist/worker/cli.js", "--help"]
