"""Pure domain shared by the bot and the GPU worker.

Nothing in this package imports discord, torch, sqlalchemy or celery.
"""
