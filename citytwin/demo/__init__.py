"""The demo city of `citytwin demo`: Shanghai science sites, air quality, guide robots."""
