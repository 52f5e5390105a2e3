"""Pure logic shared by the app's blueprints: messages, settings, errors and the model port.

Nothing in this package talks to Durable Functions; the blueprints in orchestrations/,
activities/, entities/ and http_api/ adapt it to triggers.
"""
