"""Template tags for moments: ``{{ value|when }}``, ``{{ value|when:"minute" }}``, ``{{ value|ago }}`` and
``{% current_zone %}``. What they show is defined in hosts/moments.py."""

from __future__ import annotations

from django import template

from hosts import moments

register = template.Library()

register.filter("when", moments.when)
register.filter("ago", moments.ago)
register.simple_tag(moments.current_zone, name="current_zone")
