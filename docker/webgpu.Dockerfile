# syntax=docker/dockerfile:1
# tensorfleet, webgpu image: Node.js 20 (Debian 12 slim), production dependencies (among them
# `webgpu`, Dawn prebuilt, and @tensorflow/tfjs-backend-webgpu) and the Vulkan loader, for
# `--backend webgpu` on GPU nodes (k8s/overlays/gpu-webgpu). No CUDA: on NVIDIA nodes the
# driver's Vulkan ICD is mounted by the NVIDIA container runtime when the pod requests the
# `graphics` capability (NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics). No Mesa either,
# so a pod without that ICD fails with one line instead of training on a software device.
# Build from the repository root:
#   docker build -f docker/webgpu.Dockerfile -t tensorfleet:0.1.0-webgpu .
# Untested in this repository's CI (no container engine, no GPU there): see docs/gpu.md.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# The context is the repository less what .dockerignore leaves out (tests, docs, k8s, ...).
COPY . .
# `npm ci` builds dist/ (the `prepare` script, removed afterwards so that nothing rebuilds);
# then drop the dev dependencies and the dawn.node builds of other platforms (132 MB -> 21 MB).
RUN npm ci --no-audit --no-fund \
 && npm pkg delete scripts.prepare \
 && npm prune --omit=dev --no-audit --no-fund \
 && keep="$(node -p 'process.platform + "-" + process.arch')" \
 && find node_modules/webgpu/dist -mindepth 1 -maxdepth 1 ! -name "$keep" -exec rm -rf {} + \
 && test -f "node_modules/webgpu/dist/$keep/dawn.node" \
 && rm -rf src tsconfig.json

FROM node:20-bookworm-slim
# The Vulkan loader, and glvnd, which NVIDIA's Vulkan driver (libGLX_nvidia.so.0) links against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 libglvnd0 libegl1 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
WORKDIR /app
# dist/, node_modules/ (production only) and the files read at run time (proto/, ...).
COPY --from=build /app ./
# The image's `node` user (uid 1000): the manifests run as 1000 with a read-only root filesystem.
USER 1000:1000
# The Kubernetes manifests give the command (node /app/dist/worker/cli.js --backend webgpu).
CMD ["node", "/app/dist/worker/cli.js", "--help"]
