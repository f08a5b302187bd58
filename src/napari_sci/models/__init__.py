"""Model families: what a block stores and how it is evaluated (one file per family).

``siren`` is the paper's funnel SIREN (formats 1–2); ``grid`` the latent-grid pyramids with a shared
synthesis (format 3). Above the byte format (``io``), below the pipeline (``core``).
"""
