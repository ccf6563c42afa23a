"""The offline ``edit`` backend: a planner that maps an instruction to classical image
operations it can carry out honestly (``editor``), and those operations (``ops``)."""
