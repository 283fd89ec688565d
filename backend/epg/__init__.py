"""EPG domain: XMLTV guides, their parsing, import and the programme guide."""
