import sys

from glmcourse.hub import main

sys.exit(main())
