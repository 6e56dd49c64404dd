"""``python -m study`` is ``dynl2``: the GPU machine runs the code without installing it."""

from study.cli import main

raise SystemExit(main())
