"""Report text: reading reports, findings by medspaCy rules and ConText, text strategies.

Needs the ``reports`` extra (medspaCy, spaCy, tokenizers); the rest of the engine does
not import this package.
"""
