"""Deploy Triton + the gateway as one Amazon ECS service: images, task definition, IAM, and a boto3 deploy.

Run ``python -m deploy.ecs --help``; ``deploy/ecs/README.md`` explains what it creates and what it costs.
"""
