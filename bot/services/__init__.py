"""What the bot does, as plain async functions with no Discord imports.

Cogs and views defer the interaction, call one of these functions with ids and text, and
render what it returns; everything here can be tested against a real database without a
Discord client. A request the bot turns down raises :class:`~bot.services.errors.Refused`
with a message for the user, and nothing has been charged.
"""
