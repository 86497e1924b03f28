"""Stand-in for Base/Python/slicer/i18n.py: def tr(text), def translate(context, text)."""


def tr(text):
    return text


def translate(context, text):
    return text
