"""One router module per resource; routes parse and authorize, then make one service call."""
