/**
 * The standard gRPC health service (grpc.health.v1.Health, from the package grpc-health-check)
 * on the coordinator's own gRPC port, for Kubernetes' native `grpc` probes and for
 * grpc_health_probe. It needs no job token (the kubelet sends none) and tells nothing but:
 * - service '' (the whole server) and 'tensorfleet.v1.Coordinator': SERVING while workers are
 *   admitted, NOT_SERVING once the coordinator drains (readiness: the pod leaves the Service);
 * - service 'liveness': SERVING for as long as the process answers, draining included, so that
 *   a liveness probe never kills a coordinator that is writing its last checkpoint.
 */
import type * as grpc from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

export const COORDINATOR_SERVICE = 'tensorfleet.v1.Coordinator';
export const LIVENESS_SERVICE = 'liveness';

export class HealthService {
  private readonly impl = new HealthImplementation({ '': 'SERVING', [COORDINATOR_SERVICE]: 'SERVING', [LIVENESS_SERVICE]: 'SERVING' });

  constructor(server: grpc.Server) {
    this.impl.addToServer(server);
  }

  /** Readiness: SERVING while new workers are admitted. Liveness is not affected. */
  setServing(serving: boolean): void {
    const status: ServingStatus = serving ? 'SERVING' : 'NOT_SERVING';
    this.impl.setStatus('', status);
    this.impl.setStatus(COORDINATOR_SERVICE, status);
  }
}
