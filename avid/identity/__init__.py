"""Identity: who people are. The store (one SQLite file: people, observations, prototypes, the shared model
and the library's records), scoring faces and voices against the enrolled, enrolment, training the shared
representation, and learning a person's other modality from the library.

This room works on embeddings only; turning media into embeddings is avid.pipeline's job.
"""
