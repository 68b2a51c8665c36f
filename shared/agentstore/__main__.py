from agentstore.ops.cli import main

raise SystemExit(main())
