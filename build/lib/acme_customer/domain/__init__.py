"""The pure domain: ids, customer numbers, the initial profile, completeness, events, validation.

Nothing here imports a framework or a driver.
"""
