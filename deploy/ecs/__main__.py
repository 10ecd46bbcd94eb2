"""``python -m deploy.ecs``: the deploy command."""

from deploy.ecs.cli import main

raise SystemExit(main())
