"""OAuth (connect.stripe.com) stand-in: placeholder until implemented."""

ROUTES: list = []
