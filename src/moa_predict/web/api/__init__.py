"""The JSON API under ``/api`` (``routes``): each route parses its request, makes one call to a service and
answers JSON."""
