"""The ``search`` tool: SerpAPI Google Images, Wikimedia Commons and the local image library,
one module each, and ``routing`` (which one the environment asks for). See ``docs/search.md``."""
