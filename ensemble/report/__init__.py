"""One HTML page per competition: runs, duplicates, submissions."""
