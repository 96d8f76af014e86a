# Fixture in the shape of yuchaoshui/notes Python异步并发/socket_client.py,
# written for pyfiber's tests (not a copy): prompt '>', send the typed line
# as it is, print the echo's bytes; an empty line ends it.
import socket


def main(host, port):
    client = socket.socket()
    client.connect((host, port))
    while True:
        data = input('>')
        if not data:
            break
        client.send(data.encode())
        chunk = client.recv(8192)
        if not chunk:
            break
        print(chunk)


if __name__ == '__main__':
    main('127.0.0.1', 8888)
