"""Stand-in for Base/Python/slicer/i18n.py (Slicer 5.12): no translation loaded."""


# def tr(text)
def tr(text):
    return text


# def translate(context, text)
def translate(context, text):
    return text
