#!/usr/bin/env python3
"""Talks to a Vakt collector with grpcio (the C-core gRPC implementation, not tonic),
to prove that a standard gRPC client interoperates: health check and server reflection.

usage: grpc_check.py HOST:PORT CA_PEM
Prints one JSON object: {"health": "SERVING", "services": [...]}.
"""
import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def main() -> int:
    target, ca_path = sys.argv[1], sys.argv[2]
    with open(ca_path, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    # The server certificate names localhost and 127.0.0.1; override the
    # authority so the check does not depend on how the target is spelled.
    options = (("grpc.ssl_target_name_override", "localhost"),)
    with grpc.secure_channel(target, creds, options=options) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        services = []
        for response in reflection.ServerReflectionInfo(iter([request]), timeout=10):
            services.extend(s.name for s in response.list_services_response.service)
    print(json.dumps({"health": status, "services": sorted(services)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
