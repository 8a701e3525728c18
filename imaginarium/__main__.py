from imaginarium.cli import main

raise SystemExit(main())
