package route

// LockdownTable is lockdownTable, for the tests.
var LockdownTable = lockdownTable

// UndoWith is Undo with nftables tables deleted through fw.
var UndoWith = undo
