"""Services: each public function is one transaction that applies the rules of status.py."""
