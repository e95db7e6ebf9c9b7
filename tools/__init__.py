"""Build tooling of the course, outside the lesson library: slide decks and static HTML (``tools.slides``)
and the benchmark (``tools.bench`` with one ``bench_<lesson key>.py`` section per lesson)."""
