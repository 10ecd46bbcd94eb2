"""Ways to run the stack somewhere other than this machine (``deploy.ecs``: Amazon ECS)."""
