"""One writer per export format; each takes a LocalizationResult and a Radiograph."""
