"""The colours of every chart, on screen and in the PDF reports: one meaning per colour (ux.md).

Done green, open blue, overdue red and nothing else red, not yet grey; a good result is green,
never red. Marks keep at least 3:1 against white (WCAG 1.4.11) where they carry meaning; the
pale ones (skipped, hidden) have a dark outline.
"""

DONE = "#2e7d32"  # green: done, a good result
OPEN = "#1f63b4"  # blue: open, active
IN_PROGRESS = "#0b3c7d"  # darker blue: being worked on
BLOCKED = "#a35f00"  # amber: waiting for something, not (yet) late
OVERDUE = "#c62828"  # red: overdue, and nothing else
NOT_YET = "#8a8a8a"  # grey: pending, not reached yet
SKIPPED = "#d0d0d0"  # pale grey: not needed
HIDDEN = "#ffffff"  # a part hidden by small-cell suppression: white, dashed outline
OUTLINE = "#5a5a5a"
PARTIAL = "#7a9a01"  # olive: a partial good result
NO_RESULT = "#6d6d6d"  # dark grey: a result that is not good (still not red: nobody is late)
NEUTRAL = "#4a6b8a"  # a pathway diagram's steps, which have no state
# Categories without a judgement (profiles, years): no green, red or grey among them.
CATEGORIES = ["#1f63b4", "#7b4fa0", "#00838f", "#b5581d", "#5d6d7e", "#9c27b0"]
# How long handoffs have waited: open work, so shades of blue, darker the older.
AGES = ["#9ec5ea", "#5b9bd5", "#1f63b4", "#0b3c7d"]
