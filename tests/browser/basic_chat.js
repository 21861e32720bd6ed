const ws = new WebSocket('ws://127.0.0.1:6001');
ws.onopen = () => ws.send(JSON.stringify({ message: 'Hello!' }));
ws.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.type === 'presence') {
        console.log('Online users:', data.users);
    } else {
        console.log('Message:', data);
    }
};
