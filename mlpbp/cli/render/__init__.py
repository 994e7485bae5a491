"""What people see, one module per command: Rich tables, progress bars and loss curves drawn
from the results the library returns. The numerics never import this."""
