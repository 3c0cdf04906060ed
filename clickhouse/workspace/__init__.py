"""The analysts' workspace: the pages ``warehouse serve`` serves and the API routes behind their charts.

Every chart of a page is one GET route of the query API; the page fetches it with ``chart=1`` and
draws the figure, the rows, a CSV link and the SQL that ran from that one answer, so a page never
shows a number the API would not give for the same state.
"""
