"""The library: collections of recordings processed into the store (collection), searched by face, voice or
words (search), with the people it has met but nobody has named (unknown); nearest-neighbour indexes (index)
and the Ray engine for clusters (ray_engine).
"""
