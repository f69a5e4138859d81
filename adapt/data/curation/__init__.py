"""Curation: decide what of an organisation's code may enter training (secrets scrubbed, licences checked)."""
