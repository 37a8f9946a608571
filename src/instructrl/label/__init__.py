"""Collect rankings from people: a small web app (Flask) over one SQLite file.

``instructrl label add-labeler NAME --db FILE`` creates a labeler and prints their personal link;
``instructrl label serve --tasks FILE --db FILE`` serves the tasks (``{"prompt", "responses"}``
lines, as ``instructrl compare --labelers none`` writes); ``instructrl label export`` writes the
rankings file ``instructrl rm`` reads; ``instructrl label stats`` prints progress and the
inter-labeler agreement. See :mod:`instructrl.label.db` (storage) and :mod:`instructrl.label.app`
(web app).
"""

from instructrl.label.db import FLAGS, LabelDB, LabelError, format_stats  # noqa: F401
