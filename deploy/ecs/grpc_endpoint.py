"""The opt-in address for direct gRPC clients: Triton's gRPC port behind a Network Load Balancer's TLS listener.

Off by default: Triton answers anyone who reaches it, without the gateway's keys and limits. With
``--grpc-certificate-arn`` and ``--grpc-key-secret-arn`` the deploy adds

- a Network Load Balancer ``<name>-grpc`` with a TLS listener (the certificate is ACM's; ALPN ``HTTP2Only``, as
  gRPC needs) forwarding to a TCP target group of the tasks' port 8001;
- two security groups of its own: the load balancer's (port 443 from ``--grpc-client-cidrs`` only) and the
  tasks' (port 8001 from the load balancer's group only);
- Triton started with ``--grpc-restricted-protocol``: every gRPC call but health and metadata needs the header
  ``triton-grpc-protocol-tritonserve-key`` with the key held in Secrets Manager. The ECS agent hands the secret to
  the container as a variable (the execution role reads it); the task definition holds only the secret's ARN.

The decode step enforces the upload rules inside Triton, so direct clients get the same image limits; what bounds
them instead of the gateway's admission and body pacing is deploy/ecs/README.md's "Direct gRPC clients".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.client import BaseClient

from deploy.ecs.errors import DeployError
from deploy.ecs.outcome import Change, Outcome, updated_or_unchanged
from deploy.ecs.spec import contains
from servables import names

GRPC_PORT = 8001  # Triton's, in the task
LISTENER_PORT = 443
# Triton checks `triton-grpc-protocol-<key name>` (its inference_protocols.md, "Restricted Protocols").
KEY_NAME = names.GRPC_KEY_NAME
CLIENT_HEADER = names.GRPC_KEY_HEADER
# Every protocol but health and metadata (what load balancers and discovery need): inference and model control
# first, and the admin ones (logging, trace settings, shared memory) a stranger must not reach either.
RESTRICTED = ("inference", "model-repository", "model-config", "shared-memory", "statistics", "trace", "logging")
KEY_VARIABLE = "TRITON_GRPC_KEY"  # the secret, as the ECS agent hands it to the Triton container
GATEWAY_KEY_VARIABLE = "GATEWAY_TRITON_GRPC_KEY"  # the same secret for the gateway, which calls the same port
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def restricted_protocol_flag(key: str) -> str:
    """Triton's flag that makes every protocol in ``RESTRICTED`` need the header with ``key``."""
    return f"--grpc-restricted-protocol={','.join(RESTRICTED)}:{KEY_NAME}={key}"


def triton_command(command: list[str]) -> list[str]:
    """The task's Triton command with gRPC listening for the load balancer and keyed. It runs through ``sh`` so the
    key is read from the variable the ECS agent sets from the secret, never written into the task definition."""
    args = ["--grpc-address=0.0.0.0" if arg == "--grpc-address=127.0.0.1" else arg for arg in command]
    return ["sh", "-c", " ".join(["exec", *args, restricted_protocol_flag(f'"${KEY_VARIABLE}"')])]


@dataclass(frozen=True)
class GrpcEndpoint:
    """What the operator gives for the endpoint."""

    certificate_arn: str  # ACM certificate of the TLS listener
    key_secret_arn: str  # Secrets Manager secret holding the key clients send
    client_cidrs: tuple[str, ...]  # who may reach the listener
    scheme: str = "internal"  # or "internet-facing"
    subnets: tuple[str, ...] = ()  # the load balancer's (public ones when internet-facing); default the tasks'


@dataclass(frozen=True)
class Names:
    load_balancer: str
    target_group: str
    balancer_group: str  # security group of the load balancer
    task_group: str  # security group added to the tasks

    @classmethod
    def of(cls, service: str) -> Names:
        return cls(f"{service}-grpc", f"{service}-grpc", f"{service}-grpc-nlb", f"{service}-grpc-task")


def listener_request(endpoint: GrpcEndpoint, load_balancer_arn: str, target_group_arn: str) -> dict[str, Any]:
    return {
        "LoadBalancerArn": load_balancer_arn,
        "Protocol": "TLS",
        "Port": LISTENER_PORT,
        "Certificates": [{"CertificateArn": endpoint.certificate_arn}],
        "SslPolicy": SSL_POLICY,
        "AlpnPolicy": ["HTTP2Only"],
        "DefaultActions": [{"Type": "forward", "TargetGroupArn": target_group_arn}],
    }


def ingress(port: int, cidrs: tuple[str, ...] = (), from_group: str | None = None) -> list[dict[str, Any]]:
    """One TCP rule: from CIDRs, or from another security group."""
    rule: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if from_group:
        rule["UserIdGroupPairs"] = [{"GroupId": from_group}]
    else:
        rule["IpRanges"] = [{"CidrIp": cidr} for cidr in cidrs]
    return [rule]


def plan(endpoint: GrpcEndpoint, service: str) -> dict[str, Any]:
    """What the dry run shows: the resources and their rules, with ARNs and ids the deploy learns as it goes."""
    names = Names.of(service)
    return {
        "security groups": {
            names.balancer_group: ingress(LISTENER_PORT, endpoint.client_cidrs),
            names.task_group: ingress(GRPC_PORT, from_group=f"<{names.balancer_group}>"),
        },
        "network load balancer": {
            "Name": names.load_balancer,
            "Scheme": endpoint.scheme,
            "SecurityGroups": [f"<{names.balancer_group}>"],
        },  # fmt: skip
        "target group": {"Name": names.target_group, "Protocol": "TCP", "Port": GRPC_PORT, "TargetType": "ip"},
        "TLS listener": listener_request(endpoint, f"<{names.load_balancer}>", f"<{names.target_group}>"),
        "clients send": f"{CLIENT_HEADER}: <the secret's value>",
    }


def ensure_security_group(ec2: BaseClient, name: str, vpc_id: str, rules: list[dict[str, Any]]) -> tuple[str, Outcome]:
    """A security group with exactly ``rules`` as ingress (extra ingress is revoked: the group is the deploy's)."""
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    if not found:
        group_id = ec2.create_security_group(
            GroupName=name, Description=f"{name} (python -m deploy.ecs: direct gRPC clients)", VpcId=vpc_id
        )["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=rules)
        return group_id, Outcome(Change.CREATED, name)
    group = found[0]
    current = [_comparable(rule) for rule in group.get("IpPermissions", [])]
    if current == [_comparable(rule) for rule in rules]:
        return group["GroupId"], Outcome(Change.UNCHANGED, name)
    if group.get("IpPermissions"):
        ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
    ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=rules)
    return group["GroupId"], Outcome(Change.UPDATED, f"{name}: ingress")


def _comparable(rule: dict[str, Any]) -> tuple[Any, ...]:
    return (
        rule["IpProtocol"],
        rule.get("FromPort"),
        rule.get("ToPort"),
        sorted(r["CidrIp"] for r in rule.get("IpRanges", [])),
        sorted(p["GroupId"] for p in rule.get("UserIdGroupPairs", [])),
    )


def ensure_target_group(elbv2: BaseClient, name: str, vpc_id: str) -> tuple[str, Outcome]:
    """TCP to Triton's gRPC port on each task's address, checked by TCP connect (HTTP stays on loopback)."""
    try:
        group = elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]
    except elbv2.exceptions.TargetGroupNotFoundException:
        group = elbv2.create_target_group(
            Name=name, Protocol="TCP", Port=GRPC_PORT, VpcId=vpc_id, TargetType="ip", HealthCheckProtocol="TCP"
        )["TargetGroups"][0]
        return group["TargetGroupArn"], Outcome(Change.CREATED, name)
    if group["VpcId"] != vpc_id or group["Port"] != GRPC_PORT or group["Protocol"] != "TCP":
        raise DeployError(f"target group {name} exists with another VPC, port or protocol: delete it or change --name")
    return group["TargetGroupArn"], Outcome(Change.UNCHANGED, name)


def ensure_load_balancer(
    elbv2: BaseClient, name: str, endpoint: GrpcEndpoint, subnets: tuple[str, ...], group_id: str
) -> tuple[str, str, Outcome]:
    """The Network Load Balancer (its ARN and DNS name); created once, its scheme fixed at creation."""
    try:
        balancer = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0]
    except elbv2.exceptions.LoadBalancerNotFoundException:
        balancer = elbv2.create_load_balancer(
            Name=name, Type="network", Scheme=endpoint.scheme, Subnets=list(subnets), SecurityGroups=[group_id]
        )["LoadBalancers"][0]
        return balancer["LoadBalancerArn"], balancer["DNSName"], Outcome(Change.CREATED, name)
    return balancer["LoadBalancerArn"], balancer["DNSName"], Outcome(Change.UNCHANGED, name)


def ensure_listener(elbv2: BaseClient, request: dict[str, Any]) -> Outcome:
    """The TLS listener, brought back to ``request`` when it drifted (certificate, policy, ALPN, target)."""
    listeners = elbv2.describe_listeners(LoadBalancerArn=request["LoadBalancerArn"])["Listeners"]
    listener = next((item for item in listeners if item["Port"] == LISTENER_PORT), None)
    label = f"TLS :{LISTENER_PORT}"
    if listener is None:
        elbv2.create_listener(**request)
        return Outcome(Change.CREATED, label)
    wanted = {key: value for key, value in request.items() if key != "LoadBalancerArn"}
    if contains(listener, wanted):
        return Outcome(Change.UNCHANGED, label)
    elbv2.modify_listener(ListenerArn=listener["ListenerArn"], **wanted)
    return updated_or_unchanged(label, ["listener"])
