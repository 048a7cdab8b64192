"""PrivacyService: erase and export a subject. Hosted by the ingest process."""
