from glmcourse.bench import main

raise SystemExit(main())
