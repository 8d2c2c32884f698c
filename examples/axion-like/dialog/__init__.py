"""dialog: the conversation service: turns, intents and replies over an intent engine from nlp."""
